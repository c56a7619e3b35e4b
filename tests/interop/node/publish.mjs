// A national system's sender written with nothing of the hub's: publishes one signed envelope to
// i2es.inbound with the contract's properties (publisher confirms), then waits on its own deliver
// queue for the hub's acknowledgement and prints it.
// usage: node publish.mjs AMQP_URL CODE FILE MESSAGE_ID TYPE
import { readFileSync } from "node:fs";
import amqp from "amqplib";

const [url, code, file, messageId, type] = process.argv.slice(2);
const body = readFileSync(file);
const connection = await amqp.connect(url, { clientProperties: { connection_name: `node-client-${code}` } });
try {
  const channel = await connection.createConfirmChannel();
  channel.publish("i2es.inbound", code, body, {
    messageId,
    userId: code,
    contentType: "application/xml",
    deliveryMode: 2,
    type,
  });
  await channel.waitForConfirms();
  const ack = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no acknowledgement within 20 s")), 20000);
    channel.consume(`i2es.deliver.${code}`, (message) => {
      const text = message.content.toString("utf8");
      if (message.properties.correlationId === messageId || text.includes(`<RefToMessageId>${messageId}<`)) {
        channel.ack(message);
        clearTimeout(timer);
        resolve(text);
      } else {
        channel.nack(message, false, true);
      }
    });
  });
  process.stdout.write(ack);
} finally {
  await connection.close();
}

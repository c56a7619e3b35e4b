"""RabbitMQ: the topology of section 2, the hub's consumer and its publisher."""

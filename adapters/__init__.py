"""What a national system imports to connect to the hub: an async ``Adapter`` over AMQP."""

from adapters.adapter import Acknowledgement, Adapter, AdapterConfig, Delivery, HubRejected, PublishRefused

__all__ = ["Acknowledgement", "Adapter", "AdapterConfig", "Delivery", "HubRejected", "PublishRefused"]

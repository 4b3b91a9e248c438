"""A local verification farm: a DNS server and SMTP servers of many behaviours, all on loopback."""

from tests.farm.farm import Farm, FarmSpec, ServerSpec

__all__ = ["Farm", "FarmSpec", "ServerSpec"]

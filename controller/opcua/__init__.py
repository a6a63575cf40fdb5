"""The station's OPC UA server (LADS-shaped) and the lab overview's client of it."""

from controller.opcua.server import BatchOpcUaServer, may_call, serve_opcua

__all__ = ["BatchOpcUaServer", "may_call", "serve_opcua"]

"""`vasa serve`: the live talking-portrait web page (aiohttp). Only moves bytes; see vasa.streaming."""

from vasa.server.app import ServerConfig, VasaServer, build_app

__all__ = ["ServerConfig", "VasaServer", "build_app"]

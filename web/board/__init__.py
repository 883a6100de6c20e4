"""The situation board: pages, live feed, websocket, map, texts."""

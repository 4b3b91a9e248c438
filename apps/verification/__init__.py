"""Address and sender verification: the engine (engine/, free of Django) and its Django wrapping."""

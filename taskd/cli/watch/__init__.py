"""``taskd watch``: the model of the event stream (``model``), its drawing (``view``), the
WebSocket shell (``shell``), its outputs (``sinks``) and the command (``command``)."""

"""iiot-server: the headless SCADA service (ingest, historian, alarms, API)."""

__version__ = "0.1.0"

"""The HTTP status API: reads from the projection, writes by publishing events."""

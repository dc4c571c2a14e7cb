"""leasegate.broker: what travels and where it lands (envelope, gate, inbox, dead letters)."""

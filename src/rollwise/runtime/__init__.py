"""One gateway process at run time: versions, routing, serving, telemetry and its place
in the fleet, with the HTTP layer (``rollwise.server``) kept apart."""

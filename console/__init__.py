"""The console: a Reflex web app to set up, watch and steer calls on the relay."""

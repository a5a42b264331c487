"""The call relay: Twilio Media Streams <-> OpenAI Realtime (GA)."""

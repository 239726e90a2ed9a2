"""The application: the job contract, intake, the policy's configuration, the CLI.

Later: the broker, actors, pipeline, contact log and HTTP API. It composes
`schedules/` (when and how often) and `channels/` (how to send).
"""

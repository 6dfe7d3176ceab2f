"""The actor system: Ray host actors, supervisors and replicas."""

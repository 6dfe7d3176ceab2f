"""Where servers run: local processes or Kubernetes pods, behind one narrow interface."""

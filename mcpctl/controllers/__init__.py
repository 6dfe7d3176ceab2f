"""Pure reconcile logic: desired vs observed, status transitions, manifest rendering."""

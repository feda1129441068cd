"""Quality control: pure measures (arrays in, numbers out), IQS rules and report rendering."""

"""provisioner: stand up and run elastic Kubernetes + OSCAR clusters through the Infrastructure Manager."""

__version__ = "0.1.0"

"""Provisioning: providers behind one small protocol, and the provisioner that drives them."""

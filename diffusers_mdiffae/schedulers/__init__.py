"""VP-diffusion samplers as diffusers schedulers: pure maths on tensors, no model inside."""

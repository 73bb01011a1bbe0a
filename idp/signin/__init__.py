"""How a person proves who they are: passwords, two-step codes, passkeys, resets, limits."""

"""Reward side of RLMR: writing reward model client, constraint verifier, generative judge and the
`rlmr` reward manager. Not built yet (see the rewards issue)."""

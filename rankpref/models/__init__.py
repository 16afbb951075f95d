"""Models: plain ``nn.Module``s, each with a dataclass config beside it."""

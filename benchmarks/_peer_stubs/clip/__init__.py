"""A stand-in for OpenAI's `clip` package, which `k_diffusion.evaluation` imports at module level.

The sampler benchmark uses only `k_diffusion.sampling`; nothing here is ever called. benchmarks/samplers.py
puts this folder on sys.path, nothing else does.
"""


def load(*args, **kwargs):
    raise NotImplementedError("benchmarks/_peer_stubs/clip is a stand-in: the real OpenAI clip is not installed.")

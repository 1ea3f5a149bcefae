"""minigen: a readable re-implementation of the generative stack behind SDXL, SVD, SV3D and SV4D.

The package mirrors the course: `minigen.diffusion` holds the maths (notebooks 01-03),
`minigen.data` the toy and procedural datasets the notebooks train on.
"""

__version__ = "0.1.0"

"""minigen: a readable re-implementation of the generative stack behind SDXL, SVD, SV3D and SV4D.

The package mirrors the course: `minigen.diffusion` holds the maths (notebooks 01-03), `minigen.nn` the
networks (04, 05), `minigen.conditioning` the conditioners and `minigen.camera` the cameras (06),
`minigen.pipelines` the end-to-end models (07-09, with `minigen.presets` for their architectures and
`minigen.checkpoint` for the official weights), `minigen.recipes` and `minigen.train` the training (10) and
`minigen.data` the toy and procedural datasets the notebooks train on. The `*_widgets` modules are the notebooks'
interactive views; `minigen.cli` is the `minigen` command. docs/architecture.md maps each reference file to its
minigen file.
"""

__version__ = "0.1.0"

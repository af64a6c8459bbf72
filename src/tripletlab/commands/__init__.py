"""Sub-commands of ``tripletlab`` that live outside :mod:`tripletlab.cli` (one module a
command family); :mod:`tripletlab.cli` registers them on its group with ``add_command``.
They only parse arguments and call the pipeline, deploy and serve layers."""

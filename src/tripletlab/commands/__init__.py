"""Sub-commands of ``tripletlab`` too large for :mod:`tripletlab.cli`; each module defines
click commands that only parse and call the pipeline, registered by ``cli.main.add_command``.
"""

"""``tripletlab`` sub-commands kept out of ``cli.py`` (registered there with
``main.add_command``): the ``config`` command and the ``train`` command's issue-11/12 options."""

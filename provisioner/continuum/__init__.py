"""A continuum: the clusters of one file (IM and edge), the add-ons each needs, and the workflow that runs across
them, brought up, planned, shown and taken down together (``provision continuum``).

:mod:`.spec` reads and checks the file, :mod:`.plan` decides what up does with each cluster (pure), and
:mod:`.engine` does it, journaled under ``continuum:<name>``.
"""

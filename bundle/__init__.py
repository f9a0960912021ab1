"""The bundle contract, shared by `training/` (which writes bundles) and `service/` (which reads them).

Torch-free and small: `contract` (format, graph and file names, scorer and user-input kinds, manifests),
`data` (the plain data files), `reader` (load and verify a bundle), `tokenizers` (raw item text -> the
item encoder's inputs). Neither side restates what is written here.
"""

"""Analysis of real images: the lattice (`lattice`), every site empty ones included (`sites`), column
heights against the physics (`intensities`) and the whole run on an image or stack (`pipeline`)."""

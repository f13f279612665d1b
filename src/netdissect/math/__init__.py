"""Pure tensor math of a dissection: quantiles and top images (``stats``), the bilinear table
(``bilinear``), masked-pixel selection (``masks``), IoU counting (``tally``), rotations (``rotation``)."""

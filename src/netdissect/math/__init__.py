"""Pure tensor math of a dissection: quantiles and top images (``stats``), the bilinear table
(``bilinear``), masked-pixel selection (``masks``), IoU counting (``tally``), rotations (``rotation``)."""

#: How IoU is counted (``--iou-mode``): as in the paper, or as NetDissect-Lite counts (docs/method.md).
IOU_MODES = ("paper", "lite")

"""Run directories on disk, without torch: file names and layout (``layout``), finished results
(``results``), locks, state and overwrites (``directory``), checkpoints (``checkpoints``), which
command wrote a folder (``outputs``), and other tools' results imported as runs (``foreign``)."""

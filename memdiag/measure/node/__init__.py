"""Inside and about Node.js processes: the preload memdiag puts into a Node job (`preload.js`,
shipped as package data), how it goes in (`inject`), what it wrote (`records`); V8 heap
snapshots read (`heapsnapshot`, `summary`) and taken through the inspector (`inspector`)."""

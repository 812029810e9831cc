"""Developer tools on top of the library and the node: the demo, the benchmarks, the training probe and the
generator of the shipped demo object. Nothing in the core or the node imports them."""

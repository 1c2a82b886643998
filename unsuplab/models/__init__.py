"""The models of each chapter, one family per file, read top to bottom like the chapter.

``baselines``  PCA and K-means (chapter 1)
``rbm``        restricted Boltzmann machines, AIS and deep belief networks (chapter 3)
"""

"""The models of each chapter, one family per file, read top to bottom like the chapter.

``baselines``  PCA and K-means (chapter 1)
``autoencoder``  undercomplete, sparse, denoising, convolutional and stacked autoencoders (chapter 4)
"""

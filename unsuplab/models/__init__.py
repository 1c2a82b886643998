"""The models of each chapter, one family per file, read top to bottom like the chapter.

``baselines``  PCA and K-means (chapter 1)
``vae``        VAE, importance-weighted likelihood, beta-VAE, VQ-VAE (chapter 5)
"""

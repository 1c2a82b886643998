"""The models of each chapter, one family per file, read top to bottom like the chapter.

``baselines``  PCA and K-means (chapter 1)
``word2vec``   skip-gram with negative sampling (chapter 8)
"""

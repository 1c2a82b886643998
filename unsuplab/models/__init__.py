"""The models of each chapter, one family per file, read top to bottom like the chapter.

``baselines``       PCA and K-means (chapter 1)
``sparse_coding``   ISTA, FISTA and online dictionary learning (chapter 2)
"""

"""The models of each chapter, one family per file, read top to bottom like the chapter.

``baselines``  PCA and K-means (chapter 1)
``bert``       a Transformer encoder pretrained by masked language modelling (chapter 8)
"""

"""The models of each chapter, one family per file, read top to bottom like the chapter.

``baselines``         PCA and K-means (chapter 1)
``sparse_coding``     ISTA, FISTA and online dictionary learning (chapter 2)
``rbm``               RBMs, CD-k and PCD, annealed importance sampling, deep belief networks (chapter 3)
``autoencoder``       undercomplete, sparse, denoising, convolutional and stacked autoencoders (chapter 4)
``dec``               deep embedded clustering: an encoder refined by a clustering loss (chapter 4)
``vae``               VAE, importance-weighted likelihood, beta-VAE, VQ-VAE (chapter 5)
``gan``               the GAN game, DCGAN, InfoGAN, CycleGAN (chapter 6)
``mnist_classifier``  the course's own MNIST feature net for Fréchet distances (chapter 6)
``ssl``               pretext tasks, instance discrimination, SimCLR, DeepCluster (chapter 7)
``word2vec``          skip-gram with negative sampling on whole batches (chapter 8)
``bert``              a Transformer encoder pretrained by masked language modelling (chapter 8)
``word_translation``  Procrustes, CSLS and the adversarial map: word translation without parallel data (chapter 9)
``unmt``              denoising and back-translation: sentence translation without parallel data (chapter 9)
``ebm``               energy-based models and Langevin sampling (chapter 10)
``flows``             exact likelihoods: RealNVP flows and MADE, with independent-pixel baselines (chapter 10)
``semi_supervised``   learning with few labels: label propagation, pseudo-labels, the from-scratch baseline (chapter 10)
"""

__all__ = ["baselines", "sparse_coding", "rbm", "autoencoder", "dec", "vae", "gan", "mnist_classifier", "ssl",
           "word2vec", "bert", "word_translation", "unmt", "ebm", "flows", "semi_supervised"]

"""Real data sets: checksummed files from a read-only mirror, a download cache or upstream, and their loaders.

=========================  ====================================================================
``unsuplab.data.store``    the registry of every file (:data:`REGISTRY`), the mirror, the cache,
                           :func:`fetch` and its errors
``unsuplab.data.images``   MNIST, scikit-learn's digits, natural images and patches, sprites,
                           CIFAR-10
``unsuplab.data.text``     Multi30k, word analogies and similarity, bilingual dictionaries,
                           corpora and tokens, WikiText-2, Wikipedia articles and their sections
=========================  ====================================================================

Every public name of the three is a name of ``unsuplab.data`` too, and that is how the labs use
them: ``ul.data.mnist``, ``ul.data.fetch``. :func:`fetch` finds a file in the mirror
(``$UNSUPLAB_DATA_MIRROR``), else in the cache (``$UNSUPLAB_DATA`` or ``~/.cache/unsuplab``), else
downloads it, checking its sha256 each time; each loader says where its data come from, its licence
and the shapes it returns.

    >>> x, y = mnist("test", n=100)    # doctest: +SKIP
    >>> x.shape, y[:10].tolist()        # doctest: +SKIP
    (torch.Size([100, 1, 28, 28]), [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
"""

from . import images, store, text
from .images import *  # noqa: F403 - each submodule's __all__ is its public names
from .store import *  # noqa: F403
from .text import *  # noqa: F403

__all__ = [*store.__all__, *images.__all__, *text.__all__]

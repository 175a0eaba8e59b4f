"""
WSGI config for pastq project.

It exposes the WSGI callable as a module-level variable named ``application``.

For more information on this file, see
https://docs.djangoproject.com/en/5.2/howto/deployment/wsgi/
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'pastq.settings')

application = get_wsgi_application()

# With DEBUG off the vector index must be a Chroma server: refuse to start without CHROMA_URL
# (core.E001), rather than fail on the first request that needs the index.
from core.ai.vectors import vector_index_require_configuration  # noqa: E402

vector_index_require_configuration()

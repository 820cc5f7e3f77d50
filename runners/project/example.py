"""An example of "your own project" to try ``--project`` on, made the way a user makes one.

    python -m runners.project.example DIR [--django 5.1]

runs ``django-admin startproject mysite DIR/mysite`` and adds a small app, ``shop``: a
template view (``/products/``), a database view (``/api/count/``), beside the admin's
login page (``/admin/login/``); migrates and seeds its SQLite database (200 products);
and writes the three kinds of traffic file beside the project (``urls.txt``, ``access.log``,
``locustfile.py``). ``--django`` pins a Django release in its ``requirements.txt``
(otherwise it has no dependency file). Nothing of the suite is imported by it: it is an
ordinary project. The README's "Benchmark your own project" uses it, and so do the tests.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

SHOP = {
    "__init__.py": "",
    "apps.py": (
        "from django.apps import AppConfig\n\n\n"
        "class ShopConfig(AppConfig):\n"
        '    name = "shop"\n'
        '    default_auto_field = "django.db.models.BigAutoField"\n'
    ),
    "models.py": (
        "from django.db import models\n\n\n"
        "class Product(models.Model):\n"
        "    name = models.CharField(max_length=100)\n"
        "    price = models.DecimalField(max_digits=8, decimal_places=2)\n"
    ),
    "views.py": (
        "from django.http import JsonResponse\n"
        "from django.shortcuts import render\n\n"
        "from shop.models import Product\n\n\n"
        "def products(request):\n"
        '    page = Product.objects.order_by("id")[:24]\n'
        '    return render(request, "shop/products.html", {"products": page})\n\n\n'
        "def count(request):\n"
        '    return JsonResponse({"products": Product.objects.count()})\n'
    ),
    "migrations/__init__.py": "",
    "templates/shop/products.html": (
        "<!doctype html><html><body><h1>Products</h1><ul>"
        "{% for p in products %}<li>{{ p.name }}: {{ p.price }}</li>{% endfor %}"
        "</ul></body></html>\n"
    ),
}

URLS = (
    "from django.contrib import admin\n"
    "from django.urls import path\n\n"
    "from shop import views\n\n"
    "urlpatterns = [\n"
    '    path("admin/", admin.site.urls),\n'
    '    path("products/", views.products),\n'
    '    path("api/count/", views.count),\n'
    "]\n"
)

URLS_TXT = """\
# weight  method  path: a URL list (--urls)
3 GET /products/
2 GET /api/count/
1 GET /admin/login/
"""

LOCUSTFILE = """\
from locust import FastHttpUser, task


class Shopper(FastHttpUser):
    @task(3)
    def products(self):
        self.client.get("/products/")

    @task(1)
    def count(self):
        self.client.get("/api/count/")
"""

LOG_LINE = (
    '127.0.0.1 - - [07/Dec/2026:10:00:{s:02d} +0000] "GET {path} HTTP/1.1" {status} {size} '
    '"-" "Mozilla/5.0"\n'
)


def access_log(lines: int = 400, seed: int = 1) -> str:
    """A combined-format log: /products/ 3 times as often as /api/count/, and a few
    requests a replay must not send (a POST) or cannot read."""
    rng = random.Random(seed)
    out = []
    for i in range(lines):
        path = "/products/" if rng.random() < 0.75 else "/api/count/"
        out.append(LOG_LINE.format(s=i % 60, path=path, status=200, size=400))
    out.append(
        LOG_LINE.format(s=0, path="/admin/login/", status=200, size=4000).replace("GET", "POST")
    )
    out.append("not a log line\n")
    return "".join(out)


def make(folder: Path, django: str | None = None, python: str = sys.executable) -> Path:
    """The example project in ``folder/mysite`` (and its traffic files in ``folder``); its
    root."""
    folder.mkdir(parents=True, exist_ok=True)
    root = folder / "mysite"
    root.mkdir()
    subprocess.run(
        [python, "-m", "django", "startproject", "mysite", str(root)],
        check=True,
        capture_output=True,
    )
    for name, text in SHOP.items():
        path = root / "shop" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "mysite" / "urls.py").write_text(URLS, encoding="utf-8")
    settings = root / "mysite" / "settings.py"
    text = settings.read_text(encoding="utf-8")
    text = text.replace(
        "'django.contrib.staticfiles',", "'django.contrib.staticfiles',\n    'shop',"
    )
    settings.write_text(text, encoding="utf-8")
    if django is not None:
        (root / "requirements.txt").write_text(f"django=={django}.*\n", encoding="utf-8")
    manage = [python, "-B", "manage.py"]
    # Its own settings, whatever the caller's environment says (a test runner's, say).
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mysite.settings"}
    env.pop("PYTHONPATH", None)
    for step in (["makemigrations", "shop", "-v0"], ["migrate", "-v0"]):
        subprocess.run([*manage, *step], cwd=root, env=env, check=True, capture_output=True)
    seed = (
        "from shop.models import Product; "
        "Product.objects.bulk_create(Product(name=f'product {i}', price=i) for i in range(200))"
    )
    subprocess.run(
        [*manage, "shell", "-c", seed], cwd=root, env=env, check=True, capture_output=True
    )
    (folder / "urls.txt").write_text(URLS_TXT, encoding="utf-8")
    (folder / "locustfile.py").write_text(LOCUSTFILE, encoding="utf-8")
    (folder / "access.log").write_text(access_log(), encoding="utf-8")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.project.example")
    parser.add_argument("folder", type=Path, help="where to make it (mysite/ and the traffic)")
    parser.add_argument("--django", help="pin this Django release (e.g. 5.1)")
    args = parser.parse_args(argv)
    if (args.folder / "mysite").exists():
        print(f"example: {args.folder / 'mysite'} exists", file=sys.stderr)
        return 2
    root = make(args.folder, args.django)
    print(f"made {root} (and urls.txt, access.log, locustfile.py in {args.folder})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

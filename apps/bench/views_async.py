"""Async views (served at /async/...)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []

from django.urls import path

from notifications import views

app_name = "notifications"
urlpatterns = [
    # The token is Django's signed value: URL-safe base64 and ":" (never "/").
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]

"""One router per resource; `routers` is what the app includes."""
from service.routes import admin, experiments, health, items, metrics, models, rank, users

routers = [rank.router, items.router, users.router, models.router, experiments.router, admin.router, health.router,
           metrics.router]

from rfobs import get_advanced_health_checker

checker = get_advanced_health_checker()
health = await checker.check_all()

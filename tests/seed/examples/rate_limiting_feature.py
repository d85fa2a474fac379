from rfobs import rate_limit_api_calls, rate_limit_per_user

@rate_limit_api_calls(requests_per_second=10.0)
async def call_external_api():
    pass

@rate_limit_per_user(requests_per_minute=100.0)
async def user_action(user_id):
    pass

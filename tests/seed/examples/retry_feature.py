from rfobs import retry_api_call

@retry_api_call(max_attempts=3, base_delay=1.0, max_delay=30.0)
async def unreliable_api_call():
    # Will retry with exponential backoff
    pass

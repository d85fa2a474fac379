from rfobs import benchmark, load_test, LoadTestConfig

# Benchmark a function
result = await benchmark(my_function, iterations=1000)
print(f"Operations/second: {result.operations_per_second}")

# Load test an endpoint
async def api_call():
    return await client.get("/health")

load_result = await load_test(api_call, 
    concurrent_users=50, total_requests=1000)
